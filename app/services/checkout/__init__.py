"""Checkout: what an order earns (``earning``, ``earn_rules``, ``money``), holds that reserve
points for a payment (``holds``), and orders with their refunds (``orders``)."""
