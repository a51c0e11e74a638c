"""From results to what a reader sees: the notebooks (``notebook_setup``: their first cell; ``notebooks``:
their executor), plots, the numbers the report quotes (``quoted``), deviations from the protocol, companion
and replicate results sets, rendering (``report``, ``render_offline``, ``embeds``, ``figures_page``) and
publishing (``publish``). Imports every layer below."""
