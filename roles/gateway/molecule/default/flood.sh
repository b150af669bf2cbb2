#!/bin/bash
# The gateway's flood test, run on the Molecule instance by verify.yml. Two phases, with well-kept tools:
# 1. from one address (127.0.0.1), without a key: 1000 slow-header (Slowloris), 1000 slow-body and 1000 slow-reading
#    connections (slowhttptest), while a normal request is sent from another address (127.0.0.2);
# 2. from 127.0.0.3, with a valid key: 100 uploads sent at 1 KB/s (curl --parallel --limit-rate), while the same key
#    and another client's key each send one normal request from 127.0.0.4.
# HAProxy's resident memory and its current connections (its own Prometheus metric) are sampled during phase 1.
# Prints one JSON object of figures; verify.yml asserts on them and on HAProxy's log.
# Keys come from the environment and reach curl through header files (mode 600), never argv.
set -euo pipefail
url="https://127.0.0.1:${GATEWAY_PORT}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
umask 077
printf 'Authorization: Bearer %s\n' "$FLOOD_KEY" > "$work/flood-key"
printf 'Authorization: Bearer %s\n' "$PROBE_KEY" > "$work/probe-key"
printf 'Content-Type: application/json\n' > "$work/json"
printf '{"model":"echo-embed","input":"%s"}' "$(head -c 10000 /dev/zero | tr '\0' a)" > "$work/body"

rss() { ps -C haproxy -o rss= | awk '{s += $1} END {print s + 0}'; }
conns() {
  curl -s "http://127.0.0.1:${METRICS_PORT}/metrics" | awk '/^haproxy_process_current_connections /{print $2 + 0}'
}
probe() {  # from address $1 with the key in header file $2: "status seconds"
  curl -s -o /dev/null -w '%{http_code} %{time_total}' --max-time 20 --interface "$1" --cacert "$GATEWAY_CA" \
    -H @"$2" -H @"$work/json" --data '{"model":"echo-embed","input":"hi"}' "$url/v1/embeddings" || true
}

rss_before=$(rss)
slowhttptest -H -c 1000 -r 500 -i 5 -l 20 -u "$url/v1/chat/completions" > "$work/slow-headers.log" 2>&1 &
slowhttptest -B -c 1000 -r 500 -i 5 -l 20 -s 16000 -u "$url/v1/embeddings" > "$work/slow-body.log" 2>&1 &
slowhttptest -X -c 1000 -r 500 -l 20 -k 20 -n 2 -u "$url/health" > "$work/slow-read.log" 2>&1 &
rss_peak=$rss_before conns_peak=0
for _ in 1 2 3 4 5 6; do
  sleep 2
  r=$(rss) c=$(conns)
  (( r > rss_peak )) && rss_peak=$r
  (( c > conns_peak )) && conns_peak=$c
done
during_flood=$(probe 127.0.0.2 "$work/probe-key")
wait

curl -s --parallel --parallel-immediate --parallel-max 100 --interface 127.0.0.3 --cacert "$GATEWAY_CA" \
  -H @"$work/flood-key" -H @"$work/json" --limit-rate 1000 --data-binary @"$work/body" \
  -o "$work/upload-#1" "$url/v1/embeddings?upload=[1-100]" > /dev/null 2>&1 &
sleep 4
same_key=$(probe 127.0.0.4 "$work/flood-key")
other_key=$(probe 127.0.0.4 "$work/probe-key")
wait || true

printf '{"rss_before_kib": %d, "rss_peak_kib": %d, "connections_peak": %d, "during_flood": "%s",' \
  "$rss_before" "$rss_peak" "$conns_peak" "$during_flood"
printf ' "same_key_while_uploading": "%s", "other_key_while_uploading": "%s"}\n' "$same_key" "$other_key"
