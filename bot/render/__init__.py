"""Block Kit messages for each feature: pure functions over service data (see bot.blocks for primitives)."""
