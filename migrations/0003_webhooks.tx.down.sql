DROP TABLE IF EXISTS webhook_deliveries, webhook_tasks, webhooks;
