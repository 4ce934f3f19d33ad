from django.urls import path

from supportbot.sandbox import views

app_name = "sandbox"
urlpatterns = [
    path("", views.chat_page, name="chat"),
    path("api/<path:rest>", views.proxy, name="proxy"),
]
