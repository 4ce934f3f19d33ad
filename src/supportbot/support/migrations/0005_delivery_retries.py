from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("support", "0004_outbox_claim_lease"),
    ]

    operations = [
        migrations.AddField(
            model_name="message",
            name="delivery_not_before",
            field=models.DateTimeField(blank=True, help_text="A retried message is not sent again before this time", null=True),
        ),
        migrations.AddField(
            model_name="message",
            name="delivery_parts_sent",
            field=models.PositiveSmallIntegerField(default=0, help_text="Parts of a long text (over 4,096 characters) already delivered"),
        ),
        migrations.AddField(
            model_name="message",
            name="quote_reply",
            field=models.BooleanField(default=False, help_text="Sent in Telegram as a reply quoting the customer's message"),
        ),
    ]
