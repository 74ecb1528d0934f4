"""Python-backend model implementations; model_repository/*/1/model.py only import these."""
