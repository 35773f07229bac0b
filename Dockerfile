# csi-ota controller image: `csi-ota serve` with the device API on 8080 (HTTPS) and
# the management API on 8081. Used by deploy/docker-compose-ota.yml.
FROM python:3.11-slim

WORKDIR /src
COPY pyproject.toml README.md* ./
COPY host_tools ./host_tools
RUN pip install --no-cache-dir . \
    && useradd --system --uid 10001 --home-dir /data csiota \
    && mkdir -p /firmware /config /data \
    && chown csiota /firmware /data

USER csiota
ENV FIRMWARE_STORAGE_PATH=/firmware \
    CSI_OTA_DATA_DIR=/data \
    TRUSTED_KEYS_DIR=/config/trusted-keys \
    PYTHONUNBUFFERED=1
VOLUME ["/firmware", "/data"]
EXPOSE 8080 8081

ENTRYPOINT ["csi-ota", "serve"]
CMD ["--host", "0.0.0.0", "--tls-cert", "/config/tls/server.crt", "--tls-key", "/config/tls/server.key"]
