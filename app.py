print("the app arrives with issue 4")
