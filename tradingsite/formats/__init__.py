"""Date and time formats of the admin and templates: 24-hour, year first, as the dashboard."""
