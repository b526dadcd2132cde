"""Meterline: usage and cost reporting for AI gateway traffic."""
