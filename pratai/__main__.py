from pratai.cli.main import main

main()
