"""The search console: a small web app (Starlette on uvicorn) where a shop's operator tries,
explains and compares its search. It talks to the service only through the client package
(clients/), like any shop backend; the operator's API key stays in the app's memory."""
