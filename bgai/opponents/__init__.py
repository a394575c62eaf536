"""Outside opponents and referees: GNU Backgammon as a move engine, and our agent inside gnubg.

`fibs` converts our boards to and from FIBS `board:` lines and gnubg's move notation;
`gnubg` wraps gnubg (the Debian binary over its `external` socket, or the in-process
`gnubg_nn` bindings) behind one `MoveEngine` protocol; `referee` serves gnubg's external
player protocol so whole games can be played, and refereed, inside gnubg itself.
"""
