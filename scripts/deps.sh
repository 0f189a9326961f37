#!/usr/bin/env bash
# Installs what the integration tests and the demo need, once per machine:
#  - rsyslog + rsyslog-gnutls (Debian) for the real mutual-TLS receiver;
#  - Node 22 and fauxqs (npm) for the SQS/SNS/S3 emulator (scripts/fauxqs/install.sh).
#  - Node 22 and dynalite (npm) for the DynamoDB emulator (scripts/dynalite/install.sh).
# Safe to run again: it does nothing when everything is there.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v rsyslogd >/dev/null 2>&1 || [ -z "$(find /usr/lib -name 'lmnsd_gtls.so' 2>/dev/null | head -1)" ]; then
  echo "deps: installing rsyslog and rsyslog-gnutls"
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq rsyslog rsyslog-gnutls openssl >/dev/null
fi

if [ -x scripts/fauxqs/install.sh ]; then
  scripts/fauxqs/install.sh
fi

if [ -x scripts/dynalite/install.sh ]; then
  scripts/dynalite/install.sh
fi
