"""The admin console of live connections: :mod:`realtime.admin` registers it under "Realtime".

- :mod:`~realtime.console.listing`: the request's search, filters, sort and page, and one
  registry read that yields the page of connections, the filter choices and the totals;
- :mod:`~realtime.console.topics`: a topic's subscribers and its log (length, last offset,
  publish rate);
- :mod:`~realtime.console.views`: the pages, the JSON the console polls, the actions.

Views need staff status and ``realtime.view_connections``; actions also need
``realtime.manage_connections`` (superusers have both)."""
