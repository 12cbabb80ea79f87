"""What operators use: the command line, the web page, the logs and the metrics."""
