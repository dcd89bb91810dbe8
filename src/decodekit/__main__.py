from decodekit.cli.app import main

main()
