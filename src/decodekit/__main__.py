from decodekit.cli import main

main()
