from synthrank.cli import main

main()
