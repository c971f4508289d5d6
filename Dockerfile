# Airflow 3 image with this provider installed, so every component (scheduler, dag-processor, api-server,
# triggerer, worker) registers the connection type and can import the triggers.
FROM apache/airflow:3.3.2-python3.12
COPY --chown=airflow:root pyproject.toml README.md /opt/elastic-inference/
COPY --chown=airflow:root plugins /opt/elastic-inference/plugins
COPY --chown=airflow:root sandbox /opt/elastic-inference/sandbox
COPY --chown=airflow:root include /opt/elastic-inference/include
RUN pip install --no-cache-dir "/opt/elastic-inference[load]"
