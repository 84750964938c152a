"""Reports people read: self-contained HTML (inline SVG plots); terminal output lives beside each command."""
