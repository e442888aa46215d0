"""Real-browser tests: headless Chromium drives the sign-in page against a real server."""
