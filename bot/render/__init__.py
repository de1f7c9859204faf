"""Block Kit messages for each feature: pure functions over service data (see bot.render.blocks for primitives)."""
