"""Care moments that reward members without an order: the birthday bonus (``birthdays``)."""
