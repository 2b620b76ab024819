"""The MQTT side: topics and payloads, the client sink, the outbox, the publisher."""
