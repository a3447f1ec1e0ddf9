"""The outbox and what reads it: event rows written in each change's transaction and the
feed (``events``), webhook endpoints (``webhooks``), their delivery with retries
(``webhook_delivery``) and the guard against unsafe destinations (``webhook_urls``)."""
