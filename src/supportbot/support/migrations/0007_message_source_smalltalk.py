# Message.source: the bot's own replies to small talk get their own source (no data changes).

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("support", "0006_status_change_actor_choices"),
    ]

    operations = [
        migrations.AlterField(
            model_name="message",
            name="source",
            field=models.CharField(
                choices=[("user", "Customer"), ("faq", "FAQ"), ("local_llm", "Local LLM"), ("api_llm", "API LLM"),
                         ("operator", "Operator"), ("system", "System"), ("smalltalk", "Small talk")],
                max_length=16,
            ),
        ),
    ]
