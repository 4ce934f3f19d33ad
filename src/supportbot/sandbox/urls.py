from django.urls import path

from supportbot.sandbox import views

app_name = "sandbox"
urlpatterns = [
    path("", views.chat_page, name="chat"),
    path("group/", views.group_page, name="group"),
    path("api/<path:rest>", views.proxy, name="proxy"),
]
