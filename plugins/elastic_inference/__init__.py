"""Airflow provider: elastic inference on Alibaba Cloud ACK."""
