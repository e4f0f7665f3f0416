"""Diner ordering: menu and stock, table sessions and tokens, rounds, kitchen tickets, staff tasks."""
