"""What the front ends render: tables, the leaderboard, several methods overlaid."""
