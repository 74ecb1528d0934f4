"""The demo world: data, not the catalog. A deterministic generator of products with known attributes
(English and Chinese titles, business fields, PIL renders), its held-out combinations and query set,
and the Fashion-MNIST photos (Debian's package) the demo towers are trained and measured on."""
