"""Process strategies (fork, forkserver, spawn): a pool of worker processes, one task per worker.

``_pool`` holds the pool and its data flow; ``_protocol`` the messages on each
worker's pipe; ``_child`` the loop that runs in the worker; ``_handle`` one
worker as the caller sees it; ``_receive`` the batch and stream readers;
``_failures`` what a crash or an overdue item means.  This file imports nothing:
spawn and forkserver workers import ``_child`` through it.
"""
