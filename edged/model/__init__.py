"""The model: the loaded interpreter, the flatbuffer reader, labels and the runtime."""
