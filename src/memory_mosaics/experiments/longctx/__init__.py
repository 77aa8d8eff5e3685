"""Generated long-context recall and in-context learning tasks (issue #24): MQAR, needles, variable tracking, few-shot
classification with anonymous labels; and the loop that trains and scores every architecture on them."""
