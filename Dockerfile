# Production image: slim Python, the locked dependencies only, a numeric non-root user, a
# health check. Build: docker build -t otpserver .
# Run:   docker run -p 8000:8000 --env-file .env otpserver   (OTP_MASTER_KEY and delivery required)
# Or the whole stack (server, Redis, a mail catcher): docker compose up (see docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    OTP_ENV=production \
    OTP_HOST=0.0.0.0 \
    OTP_PORT=8000

WORKDIR /app
# Exactly the files in the lock, checked by hash (scripts/lock refreshes it), then the
# server itself without resolving anything again.
COPY requirements.lock ./
RUN pip install --require-hashes -r requirements.lock
COPY pyproject.toml README.md ./
COPY otpserver ./otpserver
COPY custom ./custom
RUN pip install --no-deps . \
 && groupadd --system --gid 10001 otp \
 && useradd --system --uid 10001 --gid 10001 --no-create-home otp

# Numeric, so an orchestrator can verify the image does not run as root (runAsNonRoot).
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s --start-period=40s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('OTP_PORT', '8000'), timeout=2)"]
CMD ["python", "-m", "otpserver"]
