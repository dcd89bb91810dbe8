"""What a bench run writes for people to read: report.md and its plots (write.py), the tables printed at the
end of a run (console.py), and viewer.html, the step-by-step view of chosen outputs (viewer.py)."""
