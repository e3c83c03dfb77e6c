"""secagg-fl's federated recommender as a Flower app: ``server_app``, ``client_app``, ``prepare``."""
