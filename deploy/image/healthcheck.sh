#!/bin/bash
# The image's HEALTHCHECK: exit 0 when GET /v1/health answers 200, 1
# otherwise (503 while draining, refused, no answer within 2 s). bash's
# /dev/tcp, so the slim image needs no curl.
host=${ASR_HOST:-0.0.0.0}
case $host in 0.0.0.0 | "") host=127.0.0.1 ;; ::) host=::1 ;; esac
exec 3<>"/dev/tcp/$host/${ASR_PORT:-8000}" || exit 1
printf 'GET /v1/health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' >&3
IFS= read -r -t 2 status <&3 || { echo "asrd-healthcheck: no answer" >&2; exit 1; }
case $status in
  "HTTP/1."?" 200 "*) exit 0 ;;
esac
echo "asrd-healthcheck: ${status%$'\r'}" >&2
exit 1
