"""Button and menu listeners (block_actions), one module per feature, each with register(app, ctx)."""
