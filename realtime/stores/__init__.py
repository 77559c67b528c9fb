"""Small shared-state stores (dedup claims and answers, EventSource tickets, announced
presence, pending ACKs): interfaces in :mod:`~realtime.stores.base`, implementations in
:mod:`~realtime.stores.memory` and :mod:`~realtime.stores.redis`."""
