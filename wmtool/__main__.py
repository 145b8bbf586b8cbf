from wmtool.cli import main

main()
