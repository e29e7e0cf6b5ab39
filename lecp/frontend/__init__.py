"""The cPanel page (a CGI run as the user): requests, CSRF, HTML views, the JSON API."""
