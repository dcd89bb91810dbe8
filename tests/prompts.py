"""Varied prompts for the greedy-identity tests: writing, code, maths, copying, lists, other languages."""

PROMPTS = [
    "Write a haiku about autumn leaves.",
    "Explain what a hash table is in two sentences.",
    "What is 17 times 23? Show your working.",
    "Translate to French: The cat sleeps on the warm windowsill.",
    "Write a Python function that returns the n-th Fibonacci number.",
    "List five fruits that are red.",
    "Summarize: The city council met on Tuesday to discuss the new park. Residents asked for more trees, "
    "benches and a playground. The council agreed to plant trees this spring and to review the rest in June.",
    "Repeat exactly: the quick brown fox jumps over the lazy dog. the quick brown fox jumps over the lazy dog.",
    "What is the capital of Australia?",
    "Give me a short motivational quote.",
    "Write a SQL query that counts the orders per customer in a table orders(customer_id, id).",
    "Continue the sequence: 2, 4, 8, 16,",
    "Describe the water cycle for a ten-year-old.",
    "¿Cuál es la montaña más alta del mundo?",
    "Write a limerick about a programmer who loves coffee.",
    "Convert this JSON to YAML: {\"name\": \"Ada\", \"languages\": [\"English\", \"French\"], \"age\": 36}",
    "Why do we have seasons on Earth?",
    "Name three sorting algorithms and their time complexity.",
    "Write an email asking a colleague to move our meeting to Friday.",
    "What does the acronym CPU stand for, and what does it do?",
    "Tell me a fun fact about octopuses.",
    "Fix the bug: def add(a, b): return a - b",
]
