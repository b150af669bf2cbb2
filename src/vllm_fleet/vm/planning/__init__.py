"""Planning, on the controller before any host is touched: the spec turned into the fleet plan (every host's, the
gateway's, the monitoring's) and the checks that refuse bad input. Imports nothing of play/ or running/."""
