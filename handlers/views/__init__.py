"""Modal submission listeners (view_submission), one module per feature, each with register(app, ctx)."""
