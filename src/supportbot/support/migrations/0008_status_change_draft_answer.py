# TicketStatusChange.draft_answer: with LLM_ANSWER_MODE=draft the LLM's checked answer is kept on the
# hand-over for the operator instead of being sent (empty for every existing row).

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("support", "0007_message_source_smalltalk"),
    ]

    operations = [
        migrations.AddField(
            model_name="ticketstatuschange",
            name="draft_answer",
            field=models.TextField(
                blank=True,
                help_text="LLM_ANSWER_MODE=draft: the LLM's fact-checked answer to the question handed over, "
                          "never sent: for the operator to use, edit or ignore",
            ),
        ),
    ]
