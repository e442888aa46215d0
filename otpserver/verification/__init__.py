"""One verification flow for every carrier: the browser cookie, the challenge token, the link."""
