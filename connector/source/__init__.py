"""Crawling MLflow. Knows MLflow's API and nothing about the catalog."""
