"""The provider's Airflow UI: a FastAPI app on the API server serving the run reports and a run view (live
timeline while the load test runs, the verdict after), attached to the DAG run and task instance pages."""
