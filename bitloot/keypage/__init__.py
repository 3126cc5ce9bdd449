"""The key page: plain HTML, CSS and a small script that reveals keys in the browser."""
