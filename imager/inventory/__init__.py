"""Pure parsers of tool outputs, and the probes that run the tools."""
