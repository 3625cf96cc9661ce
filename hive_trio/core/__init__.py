"""The coordinator and its event hub: the only place that changes durable state and announces it."""
