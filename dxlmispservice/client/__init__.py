"""The client side: a ``MispClient`` that calls the service's topics over DXL, paging helpers, a
``FeedFollower`` for the feed, and the ``dxlmisp`` command line."""
