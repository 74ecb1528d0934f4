// The console's one script: a photo dropped or pasted anywhere on the search form becomes the
// form's file (then the search runs), and the weight slider shows its value. Nothing else: pages
// are plain forms and work with the keyboard alone.
(function () {
  const input = document.getElementById("photo");
  const zone = document.getElementById("dropzone");
  const form = document.getElementById("search-form");
  const slider = document.getElementById("text_weight");
  const out = document.getElementById("text_weight_out");
  if (slider && out) slider.addEventListener("input", () => { out.textContent = slider.value; });
  if (!input || !form) return;
  function usePhoto(file) {
    if (!file) return;
    const files = new DataTransfer();
    files.items.add(file);
    input.files = files.files;
    form.requestSubmit(document.getElementById("go"));
  }
  input.addEventListener("change", () => { if (input.files.length) form.requestSubmit(document.getElementById("go")); });
  if (zone) {
    ["dragenter", "dragover"].forEach((name) => zone.addEventListener(name, (e) => { e.preventDefault(); zone.classList.add("over"); }));
    ["dragleave", "drop"].forEach((name) => zone.addEventListener(name, () => zone.classList.remove("over")));
    zone.addEventListener("drop", (e) => { e.preventDefault(); usePhoto(e.dataTransfer.files[0]); });
    zone.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); input.click(); } });
  }
  document.addEventListener("paste", (e) => {
    const item = Array.from(e.clipboardData ? e.clipboardData.items : []).find((i) => i.kind === "file" && i.type.startsWith("image/"));
    if (item) { e.preventDefault(); usePhoto(item.getAsFile()); }
  });
})();
