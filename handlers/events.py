"""Events: the App Home tab shows how to use amibot and the latest audit entries."""

from bot.render.home import home_view


def register(app, ctx) -> None:
    @app.event("app_home_opened")
    def home_opened(event, client):
        if event.get("tab") != "home":
            return
        client.views_publish(user_id=event["user"], view=home_view(ctx.registry.specs, ctx.store, ctx.clock()))
